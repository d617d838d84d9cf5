#!/usr/bin/env bash
# InfoEnh GPU check: one script, at most 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh              # on a GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run    # the same code paths on a CPU at tiny sizes (< 1 minute)
#
# Sections, each in its own process under a time budget (a section that overruns is stopped and
# the next one runs; what it measured before is kept):
#   setup       imports infoenh, POT, pytest; pip-installs what is missing (never torch)   90 s
#   cuda-tests  python -m pytest tests -k cuda -q                                          50 s
#   sinkhorn    infoenh.ot.sinkhorn vs POT's ot.batch.solve_batch, FIA's workload          45 s
#   train-step  one training step of lf, selfmm, misa, host alone vs + InfoEnh            60 s
#   selfmm      Self-MM epochs at MOSI size (SYNTHETIC), host alone vs + InfoEnh          120 s
#   amp         one fixed short run, bf16 autocast vs float32: selection and metrics      105 s
#   report      one table on stdout; gpu_check.json and gpu_check.log in the output folder
#               (470 s of budgets in all: under 8 minutes)
#
# Output folder: $OUT when set, else --out DIR, else ./gpu_check_out.
# Options: --dry-run; --out DIR; --only cuda-tests,sinkhorn,...; --budget SECTION=SECONDS.
# Python: $PYTHON when set, else .venv/bin/python when present, else python3.
# Exit status: 0 when every section that ran is "ok" (CUDA tests may be "skipped (no CUDA)"),
# 1 otherwise, 2 when a GPU run finds no CUDA device or no torch.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

SECTIONS=(cuda-tests sinkhorn train-step selfmm amp)
declare -A BUDGET=([cuda-tests]=50 [sinkhorn]=45 [train-step]=60 [selfmm]=120 [amp]=105)
SETUP_BUDGET=90
DRY=0
OUT_ARG=""
ONLY=""
OVERRIDES=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT_ARG=${2:?--out needs a folder}; shift ;;
        --out=*) OUT_ARG=${1#--out=} ;;
        --only) ONLY=${2:?--only needs section names}; shift ;;
        --only=*) ONLY=${1#--only=} ;;
        --budget) OVERRIDES+=("${2:?--budget needs SECTION=SECONDS}"); shift ;;
        --budget=*) OVERRIDES+=("${1#--budget=}") ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$DRY" = 1 ]; then
    # safety nets only: the dry run takes seconds per section
    for s in "${SECTIONS[@]}"; do BUDGET[$s]=120; done
fi
for o in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do
    name=${o%%=*}; secs=${o#*=}
    if [ -z "${BUDGET[$name]+x}" ] || ! [[ "$secs" =~ ^[0-9]+$ ]]; then
        echo "gpu_check.sh: --budget wants SECTION=SECONDS with SECTION one of ${SECTIONS[*]}, got $o" >&2; exit 2
    fi
    BUDGET[$name]=$secs
done
if [ -n "$ONLY" ]; then
    for s in ${ONLY//,/ }; do
        if [ -z "${BUDGET[$s]+x}" ]; then
            echo "gpu_check.sh: --only: unknown section $s (choose from ${SECTIONS[*]})" >&2; exit 2
        fi
    done
fi

DEST=${OUT:-${OUT_ARG:-$ROOT/gpu_check_out}}
mkdir -p "$DEST" || exit 2
DEST=$(cd "$DEST" && pwd)
LOG="$DEST/gpu_check.log"
rm -f "$DEST/gpu_check.json"

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

setup_left() { awk -v a="$SETUP_END" -v b="$(now)" 'BEGIN { printf "%d", a - b }'; }

# pip, quietly, with torch pinned to the installed build (so it is never reinstalled or upgraded),
# within what is left of the setup budget
pip_install() {
    local tv cons rc left
    left=$(( $(setup_left) - 30 ))   # keep 30 s for the environment check that follows
    if [ "$left" -lt 10 ]; then echo "  pip install $*: skipped, the setup budget is spent"; return 1; fi
    tv=$("$PY" -c 'import torch; print(torch.__version__)') || return 1
    cons=$(mktemp)
    echo "torch==$tv" > "$cons"
    echo "  pip install $* (torch pinned to $tv)"
    timeout "$left" "$PY" -m pip install -q --disable-pip-version-check --retries 1 --timeout 20 -c "$cons" "$@"
    rc=$?
    rm -f "$cons"
    [ $rc -eq 0 ] || echo "  pip install $* failed (exit $rc); offline? set PIP_FIND_LINKS=<wheel folder> PIP_NO_INDEX=1"
    return $rc
}

main() {
    local t_all t0 rc s mode dryflag parts abort=""
    t_all=$(now)
    mode=$([ "$DRY" = 1 ] && echo "DRY RUN (CPU, tiny sizes)" || echo "GPU run")
    dryflag=$([ "$DRY" = 1 ] && echo "--dry-run" || true)
    parts=$(mktemp -d)
    trap 'rm -rf "$parts"' EXIT
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 INFOENH_GPU_CHECK_ACTIVE=1
    echo "== InfoEnh GPU check: $mode, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), repository $ROOT"
    echo "== python: $PY; output: $DEST"

    # ---- setup: one python start-up when nothing is missing
    t0=$(now)
    SETUP_END=$(awk -v a="$t0" -v b="$SETUP_BUDGET" 'BEGIN { printf "%.1f", a + b }')
    echo "== setup (at most ${SETUP_BUDGET} s)"
    timeout 60 "$PY" benchmarks/gpu_check.py env --parts "$parts" $dryflag
    rc=$?
    if [ $rc -ne 4 ] && [ -s "$parts/missing.txt" ]; then
        while read -r req; do
            if [ "$req" = "-e ." ]; then
                # the package itself is on PYTHONPATH; what it needs is its dependencies
                pip_install -e . || pip_install "numpy>=1.23" "scikit-learn>=1.2" "scipy>=1.9" "tqdm>=4.60" || true
            else
                pip_install "$req" || true
            fi
        done < "$parts/missing.txt"
        timeout 30 "$PY" benchmarks/gpu_check.py env --parts "$parts" $dryflag
        rc=$?
    fi
    if [ $rc -eq 4 ]; then
        abort="torch is not importable by $PY (install the machine's torch build; this script never installs torch)"
    elif grep -qx -- "-e ." "$parts/missing.txt" 2>/dev/null; then
        "$PY" -c 'import infoenh' 2>&1 | tail -3
        abort="the infoenh package is not importable (see the log)"
    elif [ $rc -eq 3 ]; then
        abort="no CUDA device (use --dry-run on a CPU)"
    elif [ $rc -ne 0 ]; then
        abort="the environment check failed (exit $rc)"
    fi
    echo "== setup: $(since "$t0") s"

    # ---- sections
    local i=0
    for s in "${SECTIONS[@]}"; do
        i=$((i + 1))
        if [ -n "$abort" ]; then break; fi
        if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$s,"* ]]; then continue; fi
        echo
        echo "== [$i/${#SECTIONS[@]}] $s (budget ${BUDGET[$s]} s)"
        t0=$(now)
        timeout --kill-after=10 "${BUDGET[$s]}" "$PY" benchmarks/gpu_check.py "$s" --parts "$parts" \
            --budget "${BUDGET[$s]}" $dryflag $([ "$DRY" = 1 ] && echo "--threads 1")
        rc=$?
        local el
        el=$(since "$t0")
        printf '{"rc": %d, "elapsed_s": %s, "budget_s": %d}\n' "$rc" "$el" "${BUDGET[$s]}" > "$parts/shell_$s.json"
        if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            echo "== [$i/${#SECTIONS[@]}] $s: STOPPED after $el s: over its ${BUDGET[$s]} s budget"
        elif [ $rc -eq 5 ]; then
            echo "== [$i/${#SECTIONS[@]}] $s: STOPPED itself after $el s: its ${BUDGET[$s]} s budget was spent"
        else
            echo "== [$i/${#SECTIONS[@]}] $s: exit $rc after $el s (budget ${BUDGET[$s]} s)"
        fi
    done

    # ---- report
    echo
    "$PY" benchmarks/gpu_check.py report --parts "$parts" --dest "$DEST" $dryflag --only "$ONLY" \
        --total-elapsed "$(since "$t_all")" ${abort:+--abort "$abort"}
    rc=$?
    echo "== total: $(since "$t_all") s"
    if [ -n "$abort" ]; then return 2; fi
    return $rc
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
