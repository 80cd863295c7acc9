"""Names of the class-activation-map methods (kept apart from bench.cam so config needs no torch)."""

CAM_METHODS = ("gradcam", "gradcam++", "scorecam")
