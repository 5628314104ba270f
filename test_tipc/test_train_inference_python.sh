#!/bin/bash
# Run a TIPC chain: train -> eval -> export -> inference (CPU; oneDNN on/off, thread counts,
# batch sizes), one "Run successfully/failed with command - ..." line per step in
# test_tipc/output/<model>/<MODE>/results_python.log. Exit code: number of failed steps.
#   bash test_tipc/prepare.sh test_tipc/configs/fast_scnn/train_infer_python.txt lite_train_lite_infer
#   bash test_tipc/test_train_inference_python.sh test_tipc/configs/fast_scnn/train_infer_python.txt lite_train_lite_infer
FILENAME=$1
MODE=$2
cd "$(dirname "$0")/.."
exec ${PYTHON:-python} test_tipc/chain.py "${FILENAME}" "${MODE}"
