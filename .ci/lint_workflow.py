"""`snakemake --lint`, failing on every finding but one.

The one: "Specify a conda environment or container for each rule". This project's
software environment is the uv lock (uv.lock), one for every rule: the workflow runs in
`uv run`, and on a cluster each job runs the project's .venv interpreter
(profiles/slurm). A per-rule conda file would be a second, unlocked copy of the same
dependencies (torch, transformers, bergson, TRL), and a container image needs a registry
that cannot be built or tested against here. So that finding is expected and filtered by
its exact title; anything else fails CI.

The text output is parsed: Snakemake 9's CLI ignores `--lint json`, and its API's JSON
lint fails on snakefile findings (it cannot serialise the source file object).
Usage: uv run python .ci/lint_workflow.py [CONFIGFILE]
"""

import re
import subprocess
import sys

ENVIRONMENT_LINT = "Specify a conda environment or container for each rule."
# "Lints for rule X (line N, FILE):" / "Lints for snakefile FILE:", then "    * TITLE:"
SUBJECT = re.compile(r"^Lints for (?P<subject>.+):$")
FINDING = re.compile(r"^    \* (?P<title>.+):$")


def main(configfiles):
    command = ["snakemake", "--lint", "--cores", "1"]
    command += [f"--configfile={f}" for f in configfiles]
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    subject, findings, environment_lints = None, [], 0
    for line in output.splitlines():
        if match := SUBJECT.match(line):
            subject = match["subject"]
        elif match := FINDING.match(line):
            if match["title"] == ENVIRONMENT_LINT:
                environment_lints += 1
            else:
                findings.append(f"{subject}: {match['title']}")
    if done.returncode not in (0, 1) or (done.returncode == 1 and not environment_lints):
        # 1 means "lints printed"; anything else (or 1 with nothing parsed) is a failure
        # to lint at all, e.g. a Snakefile that does not parse.
        print(output, file=sys.stderr)
        print(f"snakemake --lint failed (exit {done.returncode})", file=sys.stderr)
        return 1
    for finding in findings:
        print(f"lint: {finding}", file=sys.stderr)
    print(
        f"snakemake --lint ({' '.join(configfiles) or 'config/config.yaml'}): "
        f"{len(findings)} finding(s); {environment_lints} rule(s) without "
        "conda/container (expected: the environment is uv.lock, see .ci/lint_workflow.py)"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
