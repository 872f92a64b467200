#!/usr/bin/env bash
# The whole command against its engine on models of the paper's sizes, and the largest synthetic step.
# Random-init weights saved as local bf16 checkpoints (benchmarks/random_checkpoint.py; the tokenizers of the
# bundled models carried as .gpu/tok/tokenizers.tgz): for each shape,
#   1. `assocmem hijack` on the whole CounterFact file (not-think and relation, n = 0..10), its first run on
#      these weights (they are hashed once); its timing.json has the start to the first forward and the
#      scoring loop against the engine's own time in the same run;
#   2. a second run in a new folder (--per-relation 10): the start to the first forward once fingerprinted;
#   3. the engine alone (bench_hijack_engine.py --methods new) on the same machine.
# First, c4's largest training step (m = 8, L = 64, d = 2048, 20 models) in float32 and in TF32.
# Started with setsid; collect.sh-style waiting: `bash benchmarks/gpu/shapes.sh wait SECONDS`.
# SHAPES="gemma3-2.6b:gemma3-270m" LCA=0 bash benchmarks/gpu/shapes.sh: one shape (arch:tokenizer), no LCA step.
source "$(dirname "$0")/env.sh"
OUT=${OUT:-$W/out}
if [ "$1" = wait ]; then
  end=$(( $(date +%s) + ${2:-0} ))
  while [ $(date +%s) -lt $end ] && [ ! -f $W/SHAPES_DONE ]; do sleep 5; done
  tail -30 $LOGS/shapes.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  mkdir -p $OUT && tar czf $OUT/shapes.tgz -C $W --exclude='chunks' --exclude='*.parquet' --exclude='*.safetensors' \
    --exclude='ckpt-*' --exclude='tok' $(cd $W; ls -d bench logs whole-* again-* 2>/dev/null) && ls -l $OUT
  exit 0
fi
[ -d .gpu/whl ] && bash "$(dirname "$0")/stage.sh" > $LOGS/stage.log 2>&1
cd $REPO
mkdir -p $W/tok && tar xzf .gpu/tok/tokenizers.tgz -C $W/tok
step() { echo "== $1 $(date +%T)"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
{
[ "${LCA:-1}" = 1 ] && for prec in "" "--tf32"; do
  step "lca step d=2048 $prec"
  py benchmarks/bench_lca_step.py --device cuda --m 8 --L 64 --d 2048 --E 20 --steps 200 --arms eager graph $prec \
    --no-record --out $B/lca-d2048${prec#--}.json
done
for shape in ${SHAPES:-gemma3-2.6b:gemma3-270m llama2-6.9b:smollm2-135m}; do
  arch=${shape%%:*}; tok=$W/tok/${shape#*:}; ck=$W/ckpt-$arch
  step "$arch checkpoint"
  py benchmarks/random_checkpoint.py --arch $arch --tokenizer $tok --dtype bfloat16 --device cuda --out $ck
  step "$arch whole file"; s=$(date +%s%N)
  am hijack --model $ck --dtype bfloat16 --device cuda --schemes not-think relation --max-n 10 --counterfact $CF \
    --quiet --out $W/whole-$arch
  echo "$arch whole file: command wall $(ms $s) ms"; cat $W/whole-$arch/timing.json
  step "$arch again, fingerprinted"; s=$(date +%s%N)
  am hijack --model $ck --dtype bfloat16 --device cuda --schemes not-think relation --max-n 10 --counterfact $CF \
    --per-relation 10 --quiet --out $W/again-$arch
  echo "$arch again: command wall $(ms $s) ms"; cat $W/again-$arch/timing.json
  step "$arch engine alone"
  py benchmarks/bench_hijack_engine.py --model $ck --dtype bfloat16 --device cuda --counterfact $CF --per-relation 20 \
    --methods new --repeats 2 --out $B/engine-$arch.json
  rm -rf $ck
done
step done
} > $LOGS/shapes.log 2>&1
touch $W/SHAPES_DONE
