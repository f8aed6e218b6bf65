"""Box-level post-processing of video detections (the FGFA paper's Table 4): Seq-NMS, motion-guided
propagation and tubelet rescoring. Each maps a video's per-frame detections (``VideoDetections``, from any
detection method) to new per-frame detections of the same length."""

from featflow.postprocess.mgp import FlowFn, dis_flows, motion_guided_propagation, move_boxes
from featflow.postprocess.seq_nms import seq_nms
from featflow.postprocess.tubelets import tubelet_rescoring

__all__ = ["FlowFn", "dis_flows", "motion_guided_propagation", "move_boxes", "seq_nms", "tubelet_rescoring"]
