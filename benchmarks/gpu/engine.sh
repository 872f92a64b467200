#!/usr/bin/env bash
# The engine's GPU bars, on random-init Gemma 3 text models (no weights needed, the Gemma tokenizer):
# new engine vs plain right-padded HF forward vs the old engine, bf16 at ~2.6B parameters; the
# packed engine's batch size; FlexAttention vs SDPA + dense mask.
source "$(dirname "$0")/env.sh"
cd $REPO
E="py benchmarks/bench_hijack_engine.py --tokenizer $W/tok --counterfact $CF --device cuda --repeats 2"
{
echo "== 2.6b bf16 new/plain/old $(date +%T)"
$E --arch gemma3-2.6b --dtype bfloat16 --per-relation 20 --methods new plain old --batch-size 128 --out $B/e26_all.json
for bt in 32768 131072; do echo "== 2.6b bt=$bt"; $E --arch gemma3-2.6b --dtype bfloat16 --per-relation 20 --methods new --batch-tokens $bt --repeats 1 --out $B/e26_bt$bt.json; done
echo "== 2.6b rows 1024"; $E --arch gemma3-2.6b --dtype bfloat16 --per-relation 20 --methods new --row-tokens 1024 --repeats 1 --out $B/e26_rt1024.json
echo "== 2.6b flex"; $E --arch gemma3-2.6b --dtype bfloat16 --per-relation 20 --methods new --backend flex_attention --repeats 1 --out $B/e26_flex.json
echo "== done $(date +%T)"
} > $LOGS/engine.log 2>&1
touch $W/ENGINE_DONE
