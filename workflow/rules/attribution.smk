rule reduce_query:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        val=rules.tokenize.output.val,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/attribution/query"),
    params:
        attribution=config["attribution"],
    threads: MAX_THREADS
    log:
        log_path("reduce_query"),
    resources:
        mem_mb=8000,
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
    params:
        attribution=config["attribution"],
    threads: MAX_THREADS
    log:
        log_path("score_train"),
    resources:
        mem_mb=8000,
    script:
        "../scripts/score_train.py"
