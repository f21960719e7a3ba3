#!/usr/bin/env bash
# The main job end to end on the embedded graph engine, from a synthetic phantom
# corpus drawn from a known causal model. Everything lands under demo_out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${DEMO_OUT:-demo_out}
N=${DEMO_N:-2000}
EPOCHS=${DEMO_EPOCHS:-10}
export KGRAG_HOME="$OUT/home"
KG=".venv/bin/kgrag"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

rm -rf "$OUT"
mkdir -p "$OUT"

step "doctor"
$KG doctor --no-start || true

step "synthetic phantom corpus: $N studies"
$KG synth "$OUT/corpus" --n "$N" --seed 7

step "ingest"
$KG ingest "$OUT/corpus/manifest.jsonl" --workers 2

step "causal graph: build and refine"
$KG kg build

step "audit"
$KG audit --html "$OUT/audit.html" || true

step "train encoders, findings head, fusion weights, reward model"
$KG train --epochs "$EPOCHS"

step "FAISS indexes"
$KG index build

step "queries (test split: never seen by graph, training or index)"
python3 - "$OUT/corpus/manifest.jsonl" > "$OUT/queries.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = sys.argv[1].rsplit("/", 1)[0]
test = [r for r in rows if r.get("split") == "test" and r.get("images")][:5]
for r in test:
    q = (r.get("questions") or [{"question": "What are the findings?"}])[0]["question"]
    print(json.dumps({"id": r["id"], "images": [f"{base}/{r['images'][0]}"], "question": q}))
PY
$KG query --batch "$OUT/queries.jsonl" --json > "$OUT/answers.jsonl"
first=$(head -1 "$OUT/queries.jsonl")
img=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['images'][0])" "$first")
q=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['question'])" "$first")
$KG query --image "$img" --question "$q"

step "a text-only query (V_I from findings text)"
$KG query --findings "Focal consolidation in the right lower lobe." --question "Is there pneumonia?" --k 5

step "graph"
$KG kg show --status accepted --limit 15
$KG db status

step "done"
echo "answers:   $OUT/answers.jsonl" >&2
echo "audit:     $OUT/audit.html" >&2
echo "graph:     $KG db status --home $KGRAG_HOME" >&2
