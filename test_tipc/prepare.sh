#!/bin/bash
# Make the data a TIPC chain needs, with the project's own generator (nothing is downloaded).
#   bash test_tipc/prepare.sh test_tipc/configs/fast_scnn/train_infer_python.txt lite_train_lite_infer
# lite_train_lite_infer: 8 train + 4 val images of 64x128 in test_tipc/data/demo
# whole_infer:           the same, plus 16 val images of 256x512 in test_tipc/data/demo_whole
set -e
FILENAME=$1
MODE=$2
if [ ! -f "${FILENAME}" ] || [ -z "${MODE}" ]; then
    echo "usage: bash test_tipc/prepare.sh CONFIG_TXT lite_train_lite_infer|whole_infer" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
case ${MODE} in
    lite_train_lite_infer)
        ${PYTHON} tools/make_demo_data.py --root test_tipc/data/demo --num_train 8 --num_val 4 --height 64 --width 128 ;;
    whole_infer)
        ${PYTHON} tools/make_demo_data.py --root test_tipc/data/demo --num_train 8 --num_val 4 --height 64 --width 128
        ${PYTHON} tools/make_demo_data.py --root test_tipc/data/demo_whole --num_train 1 --num_val 16 --height 256 --width 512 ;;
    *)
        echo "unknown MODE ${MODE} (lite_train_lite_infer | whole_infer)" >&2
        exit 2 ;;
esac
