#!/usr/bin/env bash
# The full profile's hijacking sample and its views on one GPU, with the bundled Gemma under its own
# name (`gemma3-270m`), so the folders carry the same settings hash as the CPU-run fig1/fig2b/diagnostics
# and one local `reproduce` assembles the report. Then, if time is left, the bundled Gemma's GPU throughput
# after the padding fix (the issue-3 number was re-timed on a random-init model).
source "$(dirname "$0")/env.sh"
cd $REPO
rm -f $W/ALL_DONE $W/LLM_DONE
bash benchmarks/gpu/install_gemma.sh || { touch $W/ALL_DONE; exit 1; }
SAMPLE_IDS="hijack-sample,fig2a,appB-reverse,appB-associated,atlas"
step() { echo "== $1 $(date +%T)"; }
{
step sample; start=$(date +%s)
CUDA_VISIBLE_DEVICES=0 am reproduce --profile full --device cuda --only $SAMPLE_IDS --counterfact $CF --out $R
echo "reproduce wall: $(( $(date +%s) - start )) s"
touch $W/LLM_DONE
step bench; py benchmarks/bench_hijack_batched.py --counterfact $CF --device cuda --per-relation 60 \
  --batch-size 256 --skip-loop --repeats 3 --out $MG/bench_gpu_gemma_fp32.json
step done
} > $LOGS/llm.log 2>&1
touch $W/ALL_DONE
