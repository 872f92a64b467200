#!/usr/bin/env bash
# Fig. 2(a)/(b)'s schemes on the whole CounterFact file (21,919 records, n = 0..10), not the full
# profile's 200-per-relation sample: does the sample's ES match the whole file's? Chunks are written as
# they finish, so an interrupted run resumes (and collect.sh brings back what exists).
source "$(dirname "$0")/env.sh"
cd $REPO
rm -f $W/ALL_DONE $W/LLM_DONE
bash benchmarks/gpu/install_gemma.sh || { touch $W/ALL_DONE; exit 1; }
step() { echo "== $1 $(date +%T)"; }
{
for scheme in not-think relation; do
  step $scheme; start=$(date +%s)
  CUDA_VISIBLE_DEVICES=0 am hijack --schemes $scheme --max-n 10 --batch-size 256 --chunk-size 1024 \
    --device cuda --counterfact $CF --quiet --out $W/whole/$scheme
  echo "$scheme wall: $(( $(date +%s) - start )) s"
done
step done
} > $LOGS/whole.log 2>&1
touch $W/ALL_DONE
