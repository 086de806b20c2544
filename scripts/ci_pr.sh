#!/usr/bin/env bash
# The pull-request pipeline, as CI runs it and as a test (or a person) can run it locally:
# restore the base revision's DVC outputs from a DVC remote, reproduce the branch (a parameter
# edit retrains only what it touches), push the new outputs, and compare with the base.
#
#   scripts/ci_pr.sh BASE REMOTE [OUT]
#
#   BASE    git revision of the base branch (e.g. origin/main); its reports/ and dvc.lock are read
#           with `git show`, so it must be fetched
#   REMOTE  the DVC remote: a local directory (CI caches it with actions/cache) or any URL DVC
#           knows (s3://bucket/path needs dvc-s3 and AWS credentials in the environment)
#   OUT     where the comparison's Markdown goes (default compare.md; its curves in compare/)
#
# Run it in a checkout of its own (CI's, a fresh clone): the pull puts the base's outputs in
# data/ and reports/ (a workspace whose outputs differ makes `dvc pull` stop and ask for --force).
# The remote is written to .dvc/config.local (untracked), never to the committed .dvc/config.
# Uses the `dvc` and `python` on PATH (the project's .venv/bin first: the stages need it too).
#
# Why the base's outputs matter: the stages declare their outputs `persist` (a failed run keeps
# the old ones), which turns DVC's run-cache off for them, so nothing restores an unchanged
# stage's outputs but a pull. The `train` stage keeps a per-variant record in
# data/models/.trained.json and skips every variant whose settings, data and code match it:
# with the base's data/models in place, editing one variant retrains that one.
#
# The base's outputs are found by the hashes of a dvc.lock of the base. A run of this script
# leaves its own dvc.lock in a local-directory remote as locks/<commit>.lock; a later run whose
# base is that commit pulls by it: CI reuses what CI produced for the base, whatever machine
# produced the committed reports. Otherwise (an S3 remote, a base CI never ran) the base's
# committed dvc.lock is used: its outputs are in the remote when whoever committed the
# reproduction pushed it (`dvc push`). What the remote lacks is reproduced: correct, only
# slower; dvc pull lists it.
set -euo pipefail

usage() { echo "usage: $0 BASE REMOTE [OUT]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
base=$1
remote=$2
out=${3:-compare.md}

cd "$(git rev-parse --show-toplevel)"
command -v dvc >/dev/null || { echo "ci_pr: dvc not on PATH (put .venv/bin first)" >&2; exit 1; }
git rev-parse --verify --quiet "${base}^{commit}" >/dev/null \
  || { echo "ci_pr: unknown base revision '$base' (fetch it first)" >&2; exit 1; }

# A local directory: absolute, so it means the same from .dvc/config.local.
if [[ $remote != *://* ]]; then
  mkdir -p "$remote"
  remote=$(cd "$remote" && pwd)
fi
echo "== remote: $remote"
dvc remote add --local --force --default ci "$remote"

# 1. The base's outputs: its dvc.lock in place of the branch's for the pull, then the branch's
#    back (restored on any exit, also when the pull fails).
lock_backup=$(mktemp)
had_lock=0
if [[ -f dvc.lock ]]; then cp dvc.lock "$lock_backup"; had_lock=1; fi
restore_lock() {
  if [[ $had_lock == 1 ]]; then cp "$lock_backup" dvc.lock; else rm -f dvc.lock; fi
  rm -f "$lock_backup"
}
trap restore_lock EXIT
base_sha=$(git rev-parse "${base}^{commit}")
if [[ $remote != *://* && -f "$remote/locks/$base_sha.lock" ]]; then
  echo "== pull: the outputs CI made for $base ($base_sha)"
  cp "$remote/locks/$base_sha.lock" dvc.lock
  dvc pull --allow-missing
elif git cat-file -e "${base}:dvc.lock" 2>/dev/null; then
  echo "== pull: the outputs of $base, by its committed dvc.lock"
  git show "${base}:dvc.lock" > dvc.lock
  # --allow-missing: what the remote lacks (a base never pushed, a first run) is reproduced.
  dvc pull --allow-missing
else
  echo "== pull: $base has no dvc.lock, nothing to restore"
fi
restore_lock
trap - EXIT

# 2. The branch: only what its edit touches runs (DVC per stage, the train stage per variant).
echo "== repro"
dvc repro

# 3. Its outputs to the remote, for the next run on this branch (and for its successors once
#    merged, when the workflow runs on the base branch too).
echo "== push"
dvc push
if [[ $remote != *://* ]]; then
  mkdir -p "$remote/locks"
  cp dvc.lock "$remote/locks/$(git rev-parse HEAD).lock"  # what a run based on HEAD pulls by
fi

# 4. What changed against the base: params, metrics beyond rounding, curves, the report.
echo "== compare with $base"
PYTHONPATH=src python scripts/compare.py --base "$base" --out "$out" > /dev/null
echo "== wrote $out"
