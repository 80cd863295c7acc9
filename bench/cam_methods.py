"""The class-activation-map methods a grid can name (``localisation.methods``), as a registry.

Targets are ``"module:Class"`` strings (pytorch-grad-cam classes, or :mod:`bench.cam`'s own), so that
config validation and ``bench list cams`` import no torch; :func:`bench.cam.compute_cams` loads the class.

>>> CAM_METHODS
('gradcam', 'gradcam++', 'scorecam')
"""

from strategies._registry import Registry

CAMS = Registry("CAM method")
CAMS.register("gradcam", "pytorch_grad_cam:GradCAM",
              description="Grad-CAM (Selvaraju et al. 2017): gradient-weighted activations, pytorch-grad-cam")
CAMS.register("gradcam++", "pytorch_grad_cam:GradCAMPlusPlus",
              description="Grad-CAM++ (Chattopadhyay et al. 2018): higher-order gradient weights, pytorch-grad-cam")
CAMS.register("scorecam", "bench.cam:QuietScoreCAM",
              description="Score-CAM (Wang et al. 2020): weights from masked forward passes, no gradients")

CAM_METHODS = tuple(CAMS.registered())
