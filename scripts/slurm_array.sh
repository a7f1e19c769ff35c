#!/usr/bin/env bash
# One SLURM array task per capture of a manifest (see scripts/run_manifest.py for the manifest format).
#
#   n=$(grep -cvE '^\s*(#|$)' subjects.txt)
#   sbatch --array=0-$((n - 1))%8 scripts/slurm_array.sh subjects.txt runs/ -- --preset quality
#
# Task i tracks (videos) and fits the manifest's i-th capture into runs/NAME/. Several GPUs per task: request
# them below and pass `-- --nproc N` (torchrun on the task's node). Re-submitting skips finished captures and
# resumes interrupted fits.
#SBATCH --job-name=nerfhead
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --mem=48G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: sbatch --array=0-N $0 MANIFEST OUT [-- nerfhead fit options]" >&2
    exit 2
fi
manifest=$1
out=$2
shift 2
: "${SLURM_ARRAY_TASK_ID:?run under sbatch --array (or set SLURM_ARRAY_TASK_ID)}"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${NERFHEAD_PYTHON:-python}
exec "$python" "$repo/scripts/run_manifest.py" "$manifest" --out "$out" --index "$SLURM_ARRAY_TASK_ID" "$@"
