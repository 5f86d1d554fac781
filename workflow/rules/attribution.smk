rule reduce_query:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        val=rules.tokenize.output.val,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/attribution/query"),
    log:
        log_path("reduce_query"),
    benchmark:
        benchmark_path("reduce_query")
    threads: MAX_THREADS
    resources:
        runtime=120,
        mem_mb=8000,
    params:
        attribution=config_section("attribution"),
        code=code("reduce_query.py"),
    script:
        "../scripts/reduce_query.py"


rule score_train:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        train=rules.tokenize.output.train,
        query=rules.reduce_query.output[0],
    output:
        run=directory(f"{RESULTS}/{{game}}/{{role}}/attribution/score"),
        scores=f"{RESULTS}/{{game}}/{{role}}/attribution/scores.parquet",
    log:
        log_path("score_train"),
    benchmark:
        benchmark_path("score_train")
    threads: MAX_THREADS
    resources:
        runtime=240,
        mem_mb=8000,
    params:
        attribution=config_section("attribution"),
        code=code("score_train.py"),
    script:
        "../scripts/score_train.py"
