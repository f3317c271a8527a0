#!/bin/bash
# One GPU stage of the shipped speech16k codec, for a machine lent for a few minutes (the
# device tool: one call, files back only from $OUT, at most 16 MiB each). In order:
#   1. decode the packed corpus (pack_opus.py's Ogg Opus copy) to WAV, a process per core;
#   2. train the shipped model on (init_from=speech16k) for CODEC_SECONDS of wall clock;
#   3. export it to $OUT/model (10.2 MB float32, under the 16 MiB limit);
#   4. train a postfilter for the new codec (the shipped shape: 96 channels, 50% overlap,
#      on by default in `codec decode`) on the GPU for at most PF_SECONDS (a postfilter
#      is tied to its codec's id) into $OUT/postfilter.*;
#   5. with PRIOR=1 and time left, a prior for the new codec (recipes/prior/speech16k.yaml
#      on the GPU, the codes extracted on the CPU) into $OUT/model/prior.*: a codec ships
#      only with a prior trained on its own codes;
#   6. with time left, batched GPU throughput eager and compiled.
# Each step lands in $OUT as it is made; the script keeps to LIMIT seconds in all.
#
# Before the call, on the machine that has the corpus (from the repository root):
#   python recipes/speech16k/pack_opus.py /path/to/speech16k .gpu/data   # ~32 MB
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl \
#       soundfile cffi pycparser soxr librosa audioread decorator pooch platformdirs pystoi
# (the GPU image lacks them; pesq has no wheel, so in-run PESQ is off), ignore .gpu/ and
# .whl/ in .git/info/exclude, and carry both. The tracked tree is 28 MB, so the call
# fits 64 MiB most easily with pretrained/speech16k/prior.safetensors and
# postfilter.safetensors emptied for its duration (`: > FILE`, then `git checkout FILE`):
# the stage needs neither. Then run, with timeout_s a little above LIMIT:
#   LIMIT=575 bash recipes/speech16k/device_stage.sh 310 120
# (PF_SECONDS 0 skips the postfilter: a stage that will not be shipped yet needs none.) A
# model of another architecture than gpu.yaml's needs its model.* overrides in EXTRA
# beside init_from (the error names them).
# A second stage on the still-warm machine goes on from the first (/tmp/run, /tmp/wav and
# /tmp/site are still there):
#   export PYTHONPATH=/tmp/site:$PWD; python3 -m codec export /tmp/run /tmp/m1 &&
#   LIMIT=245 EXTRA="init_from=/tmp/m1" bash recipes/speech16k/device_stage.sh 200 0
#
# Usage: bash recipes/speech16k/device_stage.sh CODEC_SECONDS PF_SECONDS [DEVICE]
# Environment: OUT (required), LIMIT (560), DATA (.gpu/data), WAV (/tmp/wav), RUN
# (/tmp/run), PF (/tmp/pf), PYTHON (python3), EXTRA (more `codec train` overrides; a
# later one wins), PRIOR (1: train the prior), PRIOR_RUN (/tmp/prior), PRIOR_EXTRA
# (`codec prior train` overrides). The files back are then eight: the most the device
# tool returns.
set -o pipefail
export PYTHONUNBUFFERED=1
SEC=${1:-320}
PF_SEC=${2:-120}
DEV=${3:-cuda}
LIMIT=${LIMIT:-560}
PY=${PYTHON:-python3}
RUN=${RUN:-/tmp/run}
PF=${PF:-/tmp/pf}
: "${OUT:?set OUT to the folder the results go to}"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
LOG=$OUT/log.txt
say() { echo "[$(el) s] $*" | tee -a "$LOG"; }

if [ -d .whl ] && ! "$PY" -c "import soundfile, soxr, librosa, pystoi" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
say "python $("$PY" -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG" 2>&1
nproc >>"$LOG"

WAV=${WAV:-/tmp/wav}
if [ ! -f "$WAV/manifest.tsv" ]; then
    "$PY" recipes/speech16k/pack_opus.py --unpack "${DATA:-.gpu/data}" "$WAV" 2>&1 \
        | tee -a "$LOG" || exit 1
fi
say "unpacked: $(du -sh "$WAV" | cut -f1)"

rm -rf "$RUN" "$PF"
# shellcheck disable=SC2086  # EXTRA is a list of overrides
"$PY" -m codec train recipes/speech16k/gpu.yaml init_from=speech16k data.root="$WAV" \
    schedule.seconds="$SEC" schedule.steps=100000 schedule.warmup_steps=100 \
    optim.learning_rate=0.0003 logging.pesq_clips=0 device="$DEV" ${EXTRA:-} \
    --out "$RUN" >"$OUT/train.log" 2>&1
say "train rc=$? $(tail -n 3 "$OUT/train.log" | tr '\n' ' ')"
"$PY" -m codec export "$RUN" "$OUT/model" 2>&1 | tee -a "$LOG" || exit 1
rm -f "$OUT/model/README.md"
say "exported: $(ls "$OUT/model" | tr '\n' ' ')"

LEFT=$(( LIMIT - $(el) ))
if [ "$PF_SEC" -le 0 ]; then
    say "no postfilter (PF_SECONDS is $PF_SEC)"
elif [ "$LEFT" -gt 90 ]; then
    [ "$PF_SEC" -gt $(( LEFT - 60 )) ] && PF_SEC=$(( LEFT - 60 ))
    say "postfilter: $PF_SEC s of training"
    timeout $(( LEFT - 10 )) "$PY" -m codec postfilter train "$OUT/model" "$WAV" \
        --out "$PF" --hop-length 256 --channels 96 --steps 40000 --batch-size 64 \
        --seconds "$PF_SEC" --device "$DEV" 2>&1 \
        | tee -a "$LOG" | tail -n 3
    say "postfilter rc=$?"
    [ -f "$PF/postfilter.safetensors" ] && cp "$PF"/postfilter.* "$OUT/"
else
    say "no time left for the postfilter ($LEFT s)"
fi

LEFT=$(( LIMIT - $(el) ))
PRIOR_RUN=${PRIOR_RUN:-/tmp/prior}
if [ "${PRIOR:-0}" = 1 ] && [ "$LEFT" -gt 120 ]; then
    rm -rf "$PRIOR_RUN"
    # shellcheck disable=SC2086  # PRIOR_EXTRA is a list of overrides
    timeout $(( LEFT - 30 )) "$PY" -m codec prior train recipes/prior/speech16k.yaml \
        data.root="$WAV" codes.codec="$OUT/model" codes.cache_dir="$PRIOR_RUN.cache" \
        train.device="$DEV" ${PRIOR_EXTRA:-} --out "$PRIOR_RUN" 2>&1 | tee -a "$LOG" | tail -n 2
    rc=$?
    say "prior rc=$rc"
    [ "$rc" = 0 ] && "$PY" -m codec prior export "$PRIOR_RUN" "$OUT/model" 2>&1 | tee -a "$LOG"
elif [ "${PRIOR:-0}" = 1 ]; then
    say "no time left for the prior ($LEFT s)"
fi

LEFT=$(( LIMIT - $(el) ))
if [ "$LEFT" -gt 60 ] && [ "$DEV" = cuda ]; then
    timeout $(( LEFT - 10 )) "$PY" benchmarks/gpu_throughput.py --model "$OUT/model" \
        --batch 64,256 --seconds 5 --compile 2>&1 | tee -a "$LOG" | tail -n 20
    say "throughput rc=$?"
fi
say "done"
