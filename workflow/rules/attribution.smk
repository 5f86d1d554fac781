rule hessian:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        tokens=hessian_tokens_input,
        prepared=prepared_data,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/hessian"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/{{method}}/hessian.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/{{method}}/hessian.tsv"
    wildcard_constraints:
        method="|".join(FACTORED_METHODS) or "no-factored-method",
    threads: MAX_THREADS
    resources:
        **attribution_resources(
            config["attribution"]["preconditioner"]["memory_budget_gb"]
        ),
        runtime=240,
    params:
        attribution=attribution_params(HESSIAN_ATTRIBUTION_KEYS),
        preconditioner=hessian_params,
        compute=config_section("compute"),
        code=code("hessian.py"),
    script:
        "../scripts/hessian.py"


rule reduce_query:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        val=rules.tokenize.output.val,
        hessian=hessian_input,
        prepared=prepared_data,
    output:
        directory(f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/query"),
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/{{method}}/reduce_query.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/{{method}}/reduce_query.tsv"
    wildcard_constraints:
        method="|".join(REDUCE_SCORE_METHODS) or "no-reduce-method",
    threads: MAX_THREADS
    resources:
        **attribution_resources(config["attribution"]["memory_budget_gb"]),
        runtime=120,
    params:
        attribution=attribution_params(),
        preconditioner=preconditioner_params,
        compute=config_section("compute"),
        code=code("reduce_query.py"),
    script:
        "../scripts/reduce_query.py"


rule score_train:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        query=rules.reduce_query.output[0],
        hessian=hessian_input,
        prepared=prepared_data,
    output:
        # Bergson's own score run: scores.parquet and matrix.npy hold everything in it.
        run=temp(directory(f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/score")),
        scores=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/scores.parquet",
        matrix=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/matrix.npy",
        matrix_ids=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/matrix_ids.json",
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/{{method}}/score_train.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/{{method}}/score_train.tsv"
    wildcard_constraints:
        method="|".join(REDUCE_SCORE_METHODS) or "no-reduce-method",
    threads: MAX_THREADS
    resources:
        **attribution_resources(config["attribution"]["memory_budget_gb"]),
        runtime=240,
    params:
        attribution=attribution_params(),
        preconditioner=preconditioner_params,
        compute=config_section("compute"),
        code=code("score_train.py"),
    script:
        "../scripts/score_train.py"


rule pipeline_attribution:
    input:
        adapter=rules.bootstrap_adapter.output[0],
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        checkpoints=trak_checkpoints,
        prepared=prepared_data,
    output:
        # Bergson's pipeline run (Hessians, query index, scores): temporary like score/.
        run=temp(
            directory(f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/pipeline")
        ),
        scores=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/scores.parquet",
        matrix=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/matrix.npy",
        matrix_ids=f"{RESULTS}/{{game}}/{{role}}/attribution/{{method}}/matrix_ids.json",
    log:
        f"{RESULTS}/logs/{{game}}/{{role}}/{{method}}/pipeline_attribution.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{game}}/{{role}}/{{method}}/pipeline_attribution.tsv"
    wildcard_constraints:
        method="|".join(PIPELINE_METHODS) or "no-pipeline-method",
    threads: MAX_THREADS
    resources:
        **attribution_resources(config["attribution"]["memory_budget_gb"]),
        runtime=240,
    params:
        # projection_dim is the pipeline's own (attribution.trackstar / .trak)
        attribution=attribution_params(
            tuple(k for k in ATTRIBUTION_KEYS if k != "projection_dim")
        ),
        pipeline=pipeline_params,
        compute=config_section("compute"),
        code=code("pipeline_attribution.py"),
    script:
        "../scripts/pipeline_attribution.py"


rule compare_rankings:
    input:
        scores=method_scores,
        train=rules.prepare_data.output.train,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/attribution/compare.parquet",
        plot=report(
            f"{RESULTS}/{{game}}/{{role}}/attribution/compare.png",
            caption="../report/compare.rst",
            category="Attribution",
            labels={"game": "{game}", "role": "{role}", "file": "method comparison"},
        ),
    log:
        log_path("compare_rankings"),
    benchmark:
        benchmark_path("compare_rankings")
    resources:
        runtime=15,
    params:
        methods=METHODS,
        k=config["report"]["k"],
        aggregation=config["report"]["aggregation"],
        code=code("compare_rankings.py"),
    script:
        "../scripts/compare_rankings.py"


rule report_planted:
    input:
        planted=DEMO_PLANTED_FILE,
        scores=method_scores,
        train=rules.prepare_data.output.train,
        # only to say which copies are of held-out rows (they cannot be found)
        eval=rules.prepare_data.output.eval,
        prepared=prepared_data,
    output:
        table=f"{RESULTS}/{{game}}/{{role}}/attribution/planted.parquet",
        summary=f"{RESULTS}/{{game}}/{{role}}/attribution/planted.md",
    log:
        log_path("report_planted"),
    benchmark:
        benchmark_path("report_planted")
    resources:
        runtime=15,
    params:
        methods=METHODS,
        code=code("report_planted.py"),
    script:
        "../scripts/report_planted.py"
