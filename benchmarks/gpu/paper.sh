#!/usr/bin/env bash
# The synthetic (LCA) set on one GPU, in three parts, each a separate call well under the 10 minutes a call may run:
#
#   bash benchmarks/gpu/paper.sh bench   old vs new training step in one run (benchmarks/bench_lca_step.py): the old
#                                        code from .gpu/lca-old/src, made here with
#                                        `mkdir -p .gpu/lca-old && git archive 5af4dd5 src | tar -x -C .gpu/lca-old`
#                                        and carried (carry: [".gpu/lca-old"])
#   bash benchmarks/gpu/paper.sh paper   reproduce --profile paper (the authors' protocol and grid; bar: <= 5 min)
#   bash benchmarks/gpu/paper.sh full    reproduce --profile full, the synthetic experiments only (our protocol;
#                                        bar: <= 5 min)
#
# Each part writes its wall time to $OUT/<part>.txt and packs its folder (weights left out) into $OUT/<part>.tgz.
# ASSOCMEM_CUDA_GRAPHS=0 runs the same training without CUDA graphs (eager steps), for a before/after of the capture.
source "$(dirname "$0")/env.sh"
[ -d .gpu/whl ] && bash "$(dirname "$0")/stage.sh" > $LOGS/stage.log 2>&1
cd $REPO
OUT=${OUT:-$W/out}; mkdir -p $OUT
part=${1:-paper}
s=$(date +%s)
case $part in
  bench)
    for shape in "--m 8 --L 256 --d 128 --E 10" "--m 5 --L 64 --d 64 --E 20" "--m 8 --L 64 --d 2048 --E 20"; do
      python3 benchmarks/bench_lca_step.py --device cuda --baseline-src .gpu/lca-old/src --steps 500 $shape \
        >> $OUT/bench.txt 2>&1
    done
    cp benchmarks/RESULTS.md $OUT/RESULTS.md ;;
  paper)
    am reproduce --profile paper --device cuda --out $W/paper > $LOGS/paper.log 2>&1
    echo "exit=$?" >> $OUT/paper.txt
    tar czf $OUT/paper.tgz -C $W --exclude='.partial' --exclude='*.safetensors' paper ;;
  full)
    IDS=$(python3 -c "from assocmem.experiments.registry import default_registry as r
print(','.join(e.id for e in r().select(None, 'full') if not e.uses_llm))")
    am reproduce --profile full --device cuda --only $IDS --out $W/full_lca > $LOGS/full_lca.log 2>&1
    echo "exit=$?" >> $OUT/full.txt
    tar czf $OUT/full.tgz -C $W --exclude='.partial' --exclude='*.safetensors' full_lca ;;
  *) echo "usage: paper.sh bench|paper|full"; exit 2 ;;
esac
echo "part=$part wall_s=$(( $(date +%s) - s ))" | tee -a $OUT/$part.txt
tail -5 $LOGS/*.log 2>/dev/null | tail -20
