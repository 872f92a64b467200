#!/usr/bin/env bash
# Every call: install the carried wheels once (.gpu/whl: transformers 5.24 as on the CPU, gguf, typer), unpack CounterFact,
# and move the carried pieces of the two bundled GGUFs (.gpu/g*/piece*) out of the repo copy.
source "$(dirname "$0")/env.sh"
if [ -d .gpu/whl ] && [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl && touch /tmp/site/.done
  cp .gpu/whl/COMMIT $W/COMMIT 2>/dev/null
  gunzip -c .gpu/whl/counterfact_reconstructed.json.gz > $CF
  tar xzf .gpu/whl/bundled_pkgs.tgz -C /tmp/site
fi
mkdir -p $W/parts && for f in .gpu/g*/piece*; do [ -f "$f" ] && cp "$f" $W/parts/; done
ls $W/parts | tr '\n' ' '; echo; nvidia-smi -L; python3 -c "import torch, transformers, typer; print(torch.__version__, transformers.__version__, typer.__version__)"
