"""Cost model and planner of hybrid-parallel DLRM training (flow stage between train and sweep).

``cost`` predicts one step's time from the workload and the hardware, ``calibrate`` fits its rates to
``python -m hpcdlrm.bench scaling`` measurements, ``planner`` picks a sharding plan for a cluster.
"""

from .calibrate import Calibration, calibrate, read_measurements, relative_errors
from .cost import Cluster, Rates, StepCost, Workload, predict

__all__ = ["Calibration", "Cluster", "Rates", "StepCost", "Workload", "calibrate", "predict", "read_measurements",
           "relative_errors"]
