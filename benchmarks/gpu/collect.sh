#!/usr/bin/env bash
# Wait up to $1 seconds for ALL_DONE, then pack what exists into $OUT (at most 8 files come back).
source "$(dirname "$0")/env.sh"
end=$(( $(date +%s) + ${1:-0} ))
while [ ! -f $W/ALL_DONE ] && [ $(date +%s) -lt $end ]; do sleep 5; done
ls $W; tail -3 $LOGS/lca.log 2>/dev/null; tail -25 $LOGS/llm.log 2>/dev/null; tail -8 $LOGS/whole.log 2>/dev/null; nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv
[ -n "$OUT" ] || exit 0
tar czf $OUT/full.tgz -C $W --exclude='*.safetensors' --exclude='*.pt' --exclude='.partial' full 2>/dev/null
tar czf $OUT/multigpu.tgz -C $W --exclude='chunks' multigpu logs 2>/dev/null
tar czf $OUT/whole.tgz -C $W whole logs 2>/dev/null
ls -l $OUT
