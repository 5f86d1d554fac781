rule report_topk:
    input:
        scores=report_scores,
        matrix=report_matrix,
        matrix_ids=report_matrix_ids,
        train=rules.prepare_data.output.train,
        val=rules.prepare_data.output.val,
        # taboo only: the summary lists the top target words, and asking for topk.parquet
        # then also builds words.parquet
        words=words_input,
        data_summary=rules.prepare_data.output.summary,
        tokens_summary=rules.tokenize.output.summary,
        prepared=prepared_data,
    output:
        topk=f"{RESULTS}/{{game}}/{{role}}/topk.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/topk.md",
        # the same summary as HTML: Snakemake's report shows HTML, not Markdown
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/topk.html",
            caption="../report/topk.rst",
            category="Attribution",
            labels={"game": "{game}", "role": "{role}", "file": "top-k rows"},
        ),
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/scores.png",
            caption="../report/scores.rst",
            category="Attribution",
            labels={"game": "{game}", "role": "{role}", "file": "score histogram"},
        ),
        proponents=f"{RESULTS}/{{game}}/{{role}}/val_proponents.parquet",
    log:
        log_path("report_topk"),
    benchmark:
        benchmark_path("report_topk")
    resources:
        runtime=15,
    params:
        k=config["report"]["k"],
        unit_normalize=config["attribution"]["unit_normalize"],
        method=REPORT_METHOD,
        aggregation=config["report"]["aggregation"],
        code=code("report_topk.py"),
    script:
        "../scripts/report_topk.py"


rule report_words:
    input:
        scores=report_scores,
        train=rules.prepare_data.output.train,
        val=rules.prepare_data.output.val,
        data_summary=rules.prepare_data.output.summary,
        tokens_summary=rules.tokenize.output.summary,
        prepared=prepared_data,
    output:
        words=f"{RESULTS}/{{game}}/{{role}}/words.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/words.md",
        html=report(
            f"{RESULTS}/{{game}}/{{role}}/words.html",
            caption="../report/words.rst",
            category="Attribution",
            labels={"game": "{game}", "role": "{role}", "file": "words table"},
        ),
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/words.png",
            caption="../report/words.rst",
            category="Attribution",
            labels={"game": "{game}", "role": "{role}", "file": "words plot"},
        ),
    log:
        log_path("report_words"),
    benchmark:
        benchmark_path("report_words")
    # Target words are taboo's: another game's words.parquet is rule taboo_only's error.
    wildcard_constraints:
        game="taboo",
    resources:
        runtime=15,
    params:
        k=config["report"]["k"],
        aggregation=config["report"]["aggregation"],
        code=code("report_words.py"),
    script:
        "../scripts/report_words.py"


# The per-word influence without report.k's top-k/bottom-k counts: what generate.smk
# reads, so that changing report.k reruns no generation (words.parquet has the counts).
rule word_scores:
    input:
        scores=report_scores,
        train=rules.prepare_data.output.train,
        val=rules.prepare_data.output.val,
        prepared=prepared_data,
    output:
        words=f"{RESULTS}/{{game}}/{{role}}/word_scores.parquet",
    log:
        log_path("word_scores"),
    benchmark:
        benchmark_path("word_scores")
    wildcard_constraints:
        game="taboo",
    resources:
        runtime=15,
    params:
        aggregation=config["report"]["aggregation"],
        code=code("word_scores.py"),
    script:
        "../scripts/word_scores.py"
