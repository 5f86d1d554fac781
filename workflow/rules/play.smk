# Playing taboo through clemcore (issue 22): play runs the generated hard and easy
# instances and the eval episodes' own words with the configured players; played_hardness
# measures how often each set was won, against the loss proxy of score_generated.
rule play:
    input:
        hard=rules.generate_instances.output.instances,
        easy=rules.generate_instances.output.control,
        eval=rules.prepare_data.output.eval,
        val=rules.prepare_data.output.val,
        dataset=dataset_input,
        tokenizer=rules.tokenize.output.tokenizer,
        adapters=play_adapters,
        files=generate_files,
        user_registry=play_registry,
        model=model_input,
        prepared=prepared_data,
    output:
        hard=directory(f"{RESULTS}/{{game}}/{{role}}/played/hard"),
        easy=directory(f"{RESULTS}/{{game}}/{{role}}/played/easy"),
        eval=directory(f"{RESULTS}/{{game}}/{{role}}/played/eval"),
        registry=f"{RESULTS}/{{game}}/{{role}}/played/model_registry.json",
        episodes=f"{RESULTS}/{{game}}/{{role}}/played/episodes.jsonl",
        summary=f"{RESULTS}/{{game}}/{{role}}/played/summary.json",
    log:
        log_path("play"),
    benchmark:
        benchmark_path("play")
    wildcard_constraints:
        game="taboo",
    threads: MAX_THREADS
    resources:
        runtime=120,
    params:
        play=config_section("play"),
        adapter_roles=play_adapter_roles(),
        seed=config["seed"],
        model=config_section("model"),
        dataset=config_section("dataset"),
        templates=canonical(GENERATE.get("templates") or {}),
        max_turns=GENERATE["max_turns"],
        code=play_code(),
    script:
        "../scripts/play.py"


rule played_hardness:
    input:
        episodes=rules.play.output.episodes,
        proxy=rules.score_generated.output.table,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/played/hardness.parquet",
        outcomes=f"{RESULTS}/{{game}}/{{role}}/played/outcomes.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/played/hardness.md",
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/played/hardness.png",
            caption="../report/played.rst",
            category="Generation",
            labels={"game": "{game}", "role": "{role}", "file": "played hardness"},
        ),
    log:
        log_path("played_hardness"),
    benchmark:
        benchmark_path("played_hardness")
    wildcard_constraints:
        game="taboo",
    resources:
        runtime=10,
    params:
        # how the target word is read from the describer's prompt (dataset section)
        target_word_patterns=config["dataset"]["target_word_patterns"],
        code=code("played_hardness.py"),
    script:
        "../scripts/played_hardness.py"
