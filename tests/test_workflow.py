"""The Snakemake DAG: config validation at parse time and the jobs a dry run plans."""

import re

import yaml
from conftest import REPO, run_snakemake


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    table = output.split("Job stats:", 1)[1]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M) if m[0] != "total"}


def test_dry_run_lists_prepare_jobs_for_every_target(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/demo.yaml"), "-d", str(tmp_path))
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    n_pairs = sum(len(roles) for roles in config["targets"].values())
    jobs = planned_jobs(proc.stdout)
    assert jobs["prepare_data"] == n_pairs
    assert jobs["generate_demo_data"] == 1
    for game, roles in config["targets"].items():
        for role in roles:
            assert f"results/{game}/{role}/data/train.parquet" in proc.stdout


def test_research_config_dry_run_plans_no_demo_data(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/config.yaml"), "-d", str(tmp_path))
    jobs = planned_jobs(proc.stdout)
    assert "generate_demo_data" not in jobs
    assert jobs["prepare_data"] == 2


def _bad_config(tmp_path, edit):
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_snakemake("-n", "--configfile", str(path), "-d", str(tmp_path), check=False)


def test_wrong_type_fails_at_parse_time(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["report"].update(k="ten"))
    assert proc.returncode != 0
    assert "'ten' is not of type 'integer'" in proc.stdout + proc.stderr


def test_unknown_key_fails_at_parse_time(tmp_path):
    proc = _bad_config(tmp_path, lambda c: c["dataset"].update(pth="x"))
    assert proc.returncode != 0
    assert "Additional properties are not allowed ('pth' was unexpected)" in proc.stdout + proc.stderr


def test_bad_mask_mode_fails_at_parse_time(tmp_path):
    def edit(c):
        c["tokenize"] = {"mask": "prompt"}

    proc = _bad_config(tmp_path, edit)
    assert proc.returncode != 0 and "'prompt' is not one of" in proc.stdout + proc.stderr
