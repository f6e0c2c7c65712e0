"""Table sizes and epoch lengths of the real Criteo datasets, for planning runs that do not fit here.

Sources (see ../shared/notes/dlrm-anchors.md): Criteo 1TB cardinalities after the MLPerf 40M-row
cap (MLPerf DLRM reference, §3.2); the Criteo Kaggle cardinalities of the reference's Kaggle run (§7.3);
epoch lengths from Intel's MLPerf v1.0 log (4,195,197,692) and the Kaggle split (6 of 7 days of
45,840,617 rows).
"""

from __future__ import annotations

TERABYTE_TABLES = (40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209,
                   11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36)
KAGGLE_TABLES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
                 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)

# preset -> (table sizes, training samples per epoch)
DATASETS = {
    "mlperf": (TERABYTE_TABLES, 4_195_197_692),
    "kaggle": (KAGGLE_TABLES, 45_840_617 * 6 // 7),
}

# preset -> rows of one evaluation (MLPerf: the logs' eval_samples, half of day 23; Kaggle: the val half
# of the 7th part)
EVAL_SAMPLES = {"mlperf": 89_137_319, "kaggle": 45_840_617 // 14}
