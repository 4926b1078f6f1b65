#!/usr/bin/env bash
# `make gpu-study` (pipelines/bench/gpu/study.py) detached from the shell that starts it: in
# a session of its own, so that it outlives a login that drops (ssh to a cluster node, a
# job step with a time limit), and waited for from as many shells as it needs. Each wait
# copies what is done so far to DEST (a folder that is fetched or shared), so a wait that
# ends early still leaves the study's files there.
#
#   pipelines/bench/gpu/detached.sh start [gpu_study's arguments: --experiment, --steps, --set]
#   pipelines/bench/gpu/detached.sh wait SECONDS DEST
#
# GPU_STUDY_OUT (default runs/gpu-study) and PYTHON (default .venv/bin/python) say where the
# study writes and which Python runs it.
#
# start also runs CUDA's MPS daemon where there is one, so that the trials packed on the GPU
# share it as one context (the study of best.yaml's seeds ran side by side under MPS before),
# and checks that a CUDA process still starts under it; if not, the daemon is stopped.
set -u
cd "$(dirname "$0")/../../.."
# Where the study writes (gpu_study's --out), and the Python that runs it.
STUDY=${GPU_STUDY_OUT:-runs/gpu-study}
CONSOLE=$STUDY.console
EXIT=$STUDY.exit
PYTHON=${PYTHON:-.venv/bin/python}

start_mps() {
    command -v nvidia-cuda-mps-control >/dev/null || { echo "gpu-detached: no MPS here"; return; }
    nvidia-cuda-mps-control -d && sleep 1
    if $PYTHON -c "import torch; torch.ones(1, device='cuda').sum().item()" 2>/dev/null; then
        echo "gpu-detached: MPS daemon running"
    else
        echo quit | nvidia-cuda-mps-control
        echo "gpu-detached: a CUDA process failed under MPS: the daemon is stopped"
    fi
}

copy_done() {
    local dest=$1
    mkdir -p "$dest"
    for file in "$STUDY"/{study.log,evaluate.log,gpu.csv,trials.csv,table.md,figures.json}; do
        [ -f "$file" ] && cp "$file" "$dest/"
    done
    # Until the table takes them into figures.json: the models evaluated so far (8 files
    # in DEST, the study's 7 and the console).
    if [ -f "$STUDY/mlruns.tar.gz" ]; then
        cp "$STUDY/mlruns.tar.gz" "$dest/" && rm -f "$dest/members.json"
    elif [ -f "$STUDY/members.json" ]; then
        cp "$STUDY/members.json" "$dest/"
    fi
    [ -f "$CONSOLE" ] && cp "$CONSOLE" "$dest/console.log"
}

case "${1:-}" in
start)
    shift
    rm -rf "$STUDY" "$CONSOLE" "$EXIT"
    mkdir -p "$(dirname "$STUDY")"
    start_mps
    # As `make gpu-study` runs it, without make's install step (on an offline node it would
    # reach for the network once a copy of the project is newer than the environment).
    [ -d .offline-bundle/parts/part1/ewt ] && export POSTAG_EWT_DIR=$PWD/.offline-bundle/parts/part1/ewt
    setsid bash -c '"$0" -m pipelines.bench.gpu.study --out "$@" > '"$CONSOLE"' 2>&1; echo $? > '"$EXIT" \
        "$PYTHON" "$STUDY" "$@" </dev/null >/dev/null 2>&1 &
    echo "gpu-detached: started ($CONSOLE)"
    ;;
wait)
    seconds=$2 dest=$3
    deadline=$((SECONDS + seconds))
    while [ ! -f "$EXIT" ] && [ $SECONDS -lt "$deadline" ]; do
        sleep 10
        copy_done "$dest"
    done
    copy_done "$dest"
    tail -n 5 "$STUDY/study.log" 2>/dev/null
    tail -n 8 "$CONSOLE" 2>/dev/null
    if [ -f "$EXIT" ]; then
        echo "gpu-detached: done, exit $(cat "$EXIT")"
    else
        echo "gpu-detached: still running after ${seconds} s: wait again"
    fi
    ;;
*)
    echo "usage: $0 start [GPU_STUDY_ARGS] | wait SECONDS DEST" >&2
    exit 2
    ;;
esac
