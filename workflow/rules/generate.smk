# New taboo instances from the attribution (issue 12): generate_instances proposes words
# like the hard, high-impact seed words; score_generated checks their hardness on CPU.
rule generate_instances:
    input:
        words=rules.word_scores.output.words,
        train=rules.prepare_data.output.train,
        val=rules.prepare_data.output.val,
        files=generate_files,
        prepared=prepared_data,
    output:
        instances=f"{RESULTS}/{{game}}/{{role}}/generated/instances.json",
        control=f"{RESULTS}/{{game}}/{{role}}/generated/control_instances.json",
        words=f"{RESULTS}/{{game}}/{{role}}/generated/words.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/generated/words.md",
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/generated/words.html",
            caption="../report/generated.rst",
            category="Generation",
            labels={"game": "{game}", "role": "{role}", "file": "generated words"},
        ),
        summary_json=f"{RESULTS}/{{game}}/{{role}}/generated/summary.json",
    log:
        log_path("generate_instances"),
    benchmark:
        benchmark_path("generate_instances")
    wildcard_constraints:
        game="taboo",
    resources:
        runtime=15,
    params:
        generate=config_section("generate"),
        seed=config["seed"],
        schema_sha256=TABOO_INSTANCES_SCHEMA_SHA256,
        code=code("generate_instances.py"),
    script:
        "../scripts/generate_instances.py"


rule score_generated:
    input:
        words=rules.word_scores.output.words,
        val=rules.prepare_data.output.val,
        generated=rules.generate_instances.output.words,
        adapter=rules.bootstrap_adapter.output[0],
        tokenizer=rules.tokenize.output.tokenizer,
        files=generate_files,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/generated/hardness.parquet",
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/generated/hardness.png",
            caption="../report/generated.rst",
            category="Generation",
            labels={"game": "{game}", "role": "{role}", "file": "hardness plot"},
        ),
        summary=f"{RESULTS}/{{game}}/{{role}}/generated/hardness.md",
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/generated/hardness.html",
            caption="../report/generated.rst",
            category="Generation",
            labels={"game": "{game}", "role": "{role}", "file": "hardness table"},
        ),
    log:
        log_path("score_generated"),
    benchmark:
        benchmark_path("score_generated")
    wildcard_constraints:
        game="taboo",
    threads: MAX_THREADS
    resources:
        runtime=30,
    params:
        templates=canonical(GENERATE.get("templates") or {}),
        max_turns=GENERATE["max_turns"],
        max_length=config["tokenize"]["max_length"],
        code=code("score_generated.py"),
    script:
        "../scripts/score_generated.py"
