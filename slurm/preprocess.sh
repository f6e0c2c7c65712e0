#!/usr/bin/env bash
# MPI-parallel Criteo preprocessing: every Slurm task is one MPI rank of `python -m hpcdlrm.data preprocess`.
#
#   sbatch slurm/preprocess.sh --format kaggle --out DATA_DIR [--max-ind-range R | --min-count C] train.txt
#   sbatch -N 4 --ntasks-per-node=16 slurm/preprocess.sh --format terabyte --out DATA_DIR day_{0..23}.gz
#
# - Arguments go to `python -m hpcdlrm.data preprocess` unchanged. The ranks split the input (by file, and
#   by byte range inside plain files), merge vocabularies over MPI and each writes its own shards.
# - MPI start-up: `srun --mpi=pmi2` suits the pip MPICH wheel (`pip install -e .[mpi]`) and MPICH/Intel MPI
#   builds; a site's Open MPI 5 needs HPCDLRM_SRUN_MPI=pmix (`srun --mpi=list` shows what the site has).
# - Rerunning the same command resumes (finished shards are kept), so --requeue is safe.
#
# #SBATCH lines below are defaults: sbatch command-line options override them.
# Knobs (environment at submission; sbatch exports it to the job):
#   HPCDLRM_HOME      the checkout            (default: the directory above this script as submitted)
#   HPCDLRM_VENV      virtualenv to activate  (default: $HPCDLRM_HOME/.venv when it exists)
#   HPCDLRM_PYTHON    interpreter             (default: python, after the site set-up below)
#   HPCDLRM_SRUN_MPI  srun's --mpi plugin     (default: pmi2)
#   HPCDLRM_THREADS   threads per rank (Arrow/OpenMP; default: --cpus-per-task)
#SBATCH --job-name=hpcdlrm-preprocess
#SBATCH --partition=xeon
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
##SBATCH --account=CHANGE_ME
set -euo pipefail
[[ -n ${SLURM_JOB_ID:-} ]] || {
  echo "preprocess.sh is a batch script: sbatch slurm/preprocess.sh --format kaggle --out DIR INPUT..." >&2; exit 2; }

# sbatch runs a copy of this file from its spool directory; the submitted path says where the checkout is.
submitted=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' || true)
HPCDLRM_HOME=${HPCDLRM_HOME:-$(dirname "$(dirname "${submitted:-$SLURM_SUBMIT_DIR/slurm/preprocess.sh}")")}

# ===================== site set-up: EDIT THIS BLOCK (module loads, venv or conda activation) =====================
# module load python/3.11 intel-mpi      (then: pip install mpi4py against it, and maybe HPCDLRM_SRUN_MPI=pmix)
HPCDLRM_VENV=${HPCDLRM_VENV:-$HPCDLRM_HOME/.venv}
if [[ -f $HPCDLRM_VENV/bin/activate ]]; then set +u; source "$HPCDLRM_VENV/bin/activate"; set -u; fi
PYTHON=${HPCDLRM_PYTHON:-python}
# ===================== end of site set-up ========================================================================

mpi=${HPCDLRM_SRUN_MPI:-pmi2}
cpus=${SLURM_CPUS_PER_TASK:-1}
export OMP_NUM_THREADS=${HPCDLRM_THREADS:-$cpus}   # Arrow sizes its CPU pool from it too

echo "preprocess.sh: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST," \
     "${SLURM_NTASKS:-?} rank(s), srun --mpi=$mpi; $PYTHON -m hpcdlrm.data preprocess $*"
exec srun --kill-on-bad-exit=1 --mpi="$mpi" --cpus-per-task="$cpus" "$PYTHON" -m hpcdlrm.data preprocess "$@"
