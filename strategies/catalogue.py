"""Every registered loss, sampler, decision rule and named strategy preset.

Targets are ``"module:attr"`` strings so that listing them imports neither torch nor sklearn.
"""

from __future__ import annotations

from strategies._registry import Registry, UnknownNameError


class RenamedError(UnknownNameError):
    """A retired registry name; ``str()`` is one line naming what it became and why."""

    def __init__(self, kind: str, name: str, new: str, why: str, choices: list[str]):
        super().__init__(kind, name, choices)
        self.new, self.why = new, why

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} was renamed {self.new!r}: {self.why}"


class _RenamingRegistry(Registry):
    """A :class:`Registry` that answers a retired name with a :class:`RenamedError` (never listed)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.renamed: dict[str, tuple[str, str]] = {}

    def rename(self, old: str, new: str, why: str) -> None:
        self.renamed[old] = (new, why)

    def get(self, name: str):
        if name in self.renamed and name not in self:
            new, why = self.renamed[name]
            raise RenamedError(self.kind, name, new, why, self.names())
        return super().get(name)


LOSSES = Registry("loss")
SAMPLERS = _RenamingRegistry("sampler")
THRESHOLDS = Registry("threshold rule")
POSTHOC = Registry("post-hoc step")
STRATEGIES = _RenamingRegistry("strategy")

# ---- losses ------------------------------------------------------------------------------------
LOSSES.register("bce", "strategies.losses:BCE", description="binary cross-entropy")
LOSSES.register("weighted_bce", "strategies.losses:WeightedBCE",
                description="BCE with positive weights (1-p)/p from training prevalence, clipped to [1, max_weight]")
LOSSES.register("focal", "strategies.losses:Focal",
                description="sigmoid focal loss (Lin et al. 2017), torchvision")
LOSSES.register("asl", "strategies.losses:Asymmetric",
                description="asymmetric loss (Ridnik et al. 2021), timm")
LOSSES.register("cb", "strategies.losses:ClassBalanced",
                description="class-balanced weights 1/effective number (Cui et al. 2019) on BCE or focal")
LOSSES.register("db", "strategies.db_loss:DistributionBalanced",
                description="distribution-balanced loss (Wu et al. 2020): re-balanced weights + negative-tolerant reg.")
LOSSES.register("la", "strategies.losses:LogitAdjusted",
                description="logit-adjusted BCE (Menon et al. 2021): + tau*log(pi/(1-pi)) during training")
LOSSES.register("la_posthoc", "strategies.losses:LogitAdjustedPostHoc",
                description="BCE training, - tau*log(pi/(1-pi)) on the logits at prediction (Menon et al. 2021)")
LOSSES.register("ldam", "strategies.ldam:LDAM",
                description="LDAM (Cao et al. 2019) per sigmoid label: margins C/n^(1/4) for its positives and "
                            "negatives, scale s; beta > 0 adds DRW class-balanced weights")
LOSSES.register("aucm", "strategies.auc_margin:AUCM", optimizer="pesg",
                description="AUC-M min-max margin loss on sigmoid scores (Yuan et al. 2021, LibAUC), trained with "
                            "its own optimiser, PESG")

# ---- samplers ----------------------------------------------------------------------------------
SAMPLERS.register("none", "strategies.samplers:Uniform", description="each training image once per epoch")
SAMPLERS.register("ml_ros", "strategies.samplers:MLROS",
                  description="ML-ROS: clone images with minority labels (Charte et al. 2015)")
SAMPLERS.register("ml_rus", "strategies.samplers:MLRUS",
                  description="ML-RUS: delete random images with no minority label, label-less ones included "
                              "(after Charte et al. 2015)")
SAMPLERS.register("class_aware", "strategies.class_sampling:ClassAware",
                  description="class-aware sampling: a class uniformly, then one of its images (Shen et al. 2016)")
SAMPLERS.register("sqrt", "strategies.class_sampling:SquareRoot",
                  description="square-root sampling: a class with probability ~ sqrt(n_c), then one of its images")
SAMPLERS.register("local_imbalance_ros", "strategies.local_imbalance:LocalImbalance",
                  description="MLSOL-weighted ROS: copies of minority images in locally imbalanced kNN "
                              "neighbourhoods, nothing synthesised (needs features)")
MLSOL_RENAMED = ("it copied real images with MLSOL's seed weights and synthesised none, so it is weighted random "
                 "oversampling, not MLSOL (Liu et al. 2021)")
SAMPLERS.rename("mlsol", "local_imbalance_ros", MLSOL_RENAMED)

# ---- decision rules ----------------------------------------------------------------------------
THRESHOLDS.register("fixed", "strategies.thresholds:Fixed", description="the same threshold (0.5) for every label")
THRESHOLDS.register("f1", "strategies.thresholds:MaxF1",
                    description="per-label threshold maximising F1 on the validation part")
THRESHOLDS.register("youden", "strategies.thresholds:Youden",
                    description="per-label threshold maximising Youden's J = TPR - FPR on the validation ROC")
THRESHOLDS.register("precision", "strategies.thresholds:PrecisionTarget",
                    description="per-label smallest threshold reaching a target validation precision (0.8)")

# ---- post-hoc steps (after the last stage, before the decision rule) ----------------------------------------------
POSTHOC.register("tau_norm", "strategies.stages:TauNorm",
                 description="tau-normalised classifier rows W_j/||W_j||^tau, tau chosen on validation "
                             "(Kang et al. 2020)")


# ---- named strategies --------------------------------------------------------------------------
def preset(name: str, description: str, *, loss="bce", sampler="none", threshold="f1", space=None, stages=None,
           mixup=None, posthoc=None, reference: str = "") -> None:
    """Register a named strategy; ``space`` declares its tunable parameters for ``bench tune``.

    ``space`` maps ``"part.param"`` (part: loss, sampler or threshold) to one of
    ``{"uniform": [lo, hi]}``, ``{"loguniform": [lo, hi]}`` or ``{"choice": [v1, v2, ...]}``. ``stages``,
    ``mixup`` and ``posthoc`` are as in :mod:`strategies.stages`; ``reference`` names the paper.
    """
    extra = {k: v for k, v in (("stages", stages), ("mixup", mixup), ("posthoc", posthoc)) if v}
    STRATEGIES.register(name, "strategies.base:Strategy", description=description, loss=loss, sampler=sampler,
                        threshold=threshold, space=space or {}, reference=reference, **extra)


FOCAL_GAMMA = {"uniform": [1.0, 4.0]}  # gamma < 1 can give NaN gradients on saturated logits
ASL_SPACE = {"loss.gamma_neg": {"uniform": [1.0, 6.0]}, "loss.gamma_pos": {"choice": [0.0, 1.0, 2.0]},
             "loss.clip": {"uniform": [0.0, 0.2]}}
ROS_SPACE = {"sampler.percentage": {"uniform": [0.1, 1.0]}}
CB_BETA = {"choice": [0.9, 0.99, 0.999, 0.9999]}
LA_TAU = {"uniform": [0.25, 2.0]}

preset("bce", "baseline: binary cross-entropy, uniform sampling, F1-tuned thresholds")
preset("weighted_bce", "BCE with positive weights (1-p)/p from training prevalence, clipped at 50",
       loss="weighted_bce", space={"loss.max_weight": {"loguniform": [2.0, 100.0]}})
preset("cb", "class-balanced BCE: label weights 1/effective number, beta 0.999 (Cui et al. 2019)",
       loss={"name": "cb", "beta": 0.999}, space={"loss.beta": CB_BETA})
preset("cb_focal", "class-balanced focal loss, beta 0.999, gamma 2 (Cui et al. 2019)",
       loss={"name": "cb", "beta": 0.999, "base": "focal", "gamma": 2.0},
       space={"loss.beta": CB_BETA, "loss.gamma": FOCAL_GAMMA})
preset("focal", "sigmoid focal loss, gamma 2", loss={"name": "focal", "gamma": 2.0},
       space={"loss.gamma": FOCAL_GAMMA})
preset("asl", "asymmetric loss, gamma- 4, gamma+ 1, clip 0.05", loss="asl", space=ASL_SPACE)
preset("dbloss", "distribution-balanced loss with class-aware sampling, as Wu et al. 2020 train it",
       loss="db", sampler="class_aware",
       space={"loss.neg_scale": {"uniform": [1.0, 5.0]}, "loss.init_bias": {"uniform": [0.0, 0.2]},
              "loss.map_gamma": {"uniform": [0.05, 0.5]}})
preset("dbloss_uniform", "distribution-balanced loss on uniform sampling (NTR + re-balanced weights only)",
       loss="db", space={"loss.neg_scale": {"uniform": [1.0, 5.0]}, "loss.init_bias": {"uniform": [0.0, 0.2]}})
preset("la_loss", "logit-adjusted BCE: tau*log(pi/(1-pi)) added to the logits in training, tau 1",
       loss="la", space={"loss.tau": LA_TAU})
preset("la_posthoc", "BCE training, logits minus tau*log(pi/(1-pi)) at prediction, tau 1",
       loss="la_posthoc", space={"loss.tau": LA_TAU})
preset("ml_ros", "BCE on ML-ROS resampled epochs (up to +25% clones of minority-label images)", sampler="ml_ros",
       space=ROS_SPACE)
preset("ml_rus", "BCE on ML-RUS resampled epochs (-25%: images with no minority label, label-less ones included)",
       sampler="ml_rus", space={"sampler.percentage": {"uniform": [0.05, 0.5]}})
preset("class_aware", "BCE with class-aware sampling (a class uniformly, then an image; normals as a class)",
       sampler="class_aware", space={"sampler.no_finding": {"choice": ["class", "skip"]}})
preset("sqrt_sampling", "BCE with square-root class sampling (class probability ~ sqrt(n_c))",
       sampler="sqrt", space={"sampler.power": {"uniform": [0.0, 1.0]}})
preset("focal_ros", "focal loss (gamma 2) on ML-ROS resampled epochs", loss={"name": "focal", "gamma": 2.0},
       sampler="ml_ros", space={"loss.gamma": FOCAL_GAMMA, **ROS_SPACE})
preset("asl_ros", "asymmetric loss on ML-ROS resampled epochs", loss="asl", sampler="ml_ros",
       space={**ASL_SPACE, **ROS_SPACE})
preset("local_imbalance_ros", "BCE + MLSOL-weighted random oversampling (+25% real copies, none synthesised; "
       "needs features)", sampler="local_imbalance_ros",
       space={"sampler.percentage": {"uniform": [0.1, 1.0]}, "sampler.k": {"choice": [3, 5, 10]}})
STRATEGIES.rename("mlsol", "local_imbalance_ros", MLSOL_RENAMED)
preset("bce_youden", "baseline BCE with per-label Youden-J thresholds instead of max-F1", threshold="youden")
preset("bce_precision", "baseline BCE with per-label thresholds reaching 0.8 validation precision",
       threshold={"name": "precision", "target": 0.8})
preset("bce_fixed", "baseline BCE with the fixed 0.5 threshold", threshold="fixed")

# ---- staged and long-tail recipes (LongTailCXR, Holste et al. 2022; LibAUC, Yuan et al. 2021) ------------------
CAO_2019 = "Cao et al. 2019, Learning imbalanced datasets with label-distribution-aware margin loss (NeurIPS)"
KANG_2020 = "Kang et al. 2020, Decoupling representation and classifier for long-tailed recognition (ICLR)"
YUAN_2021 = ("Yuan et al. 2021, Large-scale robust deep AUC maximization (ICCV); LibAUC "
             "(https://libauc.org)")
DRW_AT = 0.8  # Cao et al. defer re-weighting to epoch 160 of 200

preset("ldam", "LDAM loss per sigmoid label: margins C/n^(1/4) on positives and negatives, max 0.5, s 30",
       loss={"name": "ldam", "max_m": 0.5, "s": 30.0}, space={"loss.max_m": {"uniform": [0.1, 1.0]}},
       reference=CAO_2019)
preset("ldam_drw", "LDAM, then from 80% of the budget LDAM with DRW class-balanced weights (beta 0.9999)",
       loss={"name": "ldam", "max_m": 0.5, "s": 30.0},
       stages=[{"name": "ldam", "until": DRW_AT},
               {"name": "drw", "loss": {"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": 0.9999}}],
       reference=CAO_2019)
preset("drw", "deferred re-weighting: BCE, then from 80% of the budget class-balanced BCE (beta 0.9999)",
       stages=[{"name": "bce", "until": DRW_AT}, {"name": "drw", "loss": {"name": "cb", "beta": 0.9999}}],
       reference=CAO_2019)
preset("crt", "cRT: BCE for 70% of the budget, then the classifier re-initialised and re-trained on frozen "
       "features with class-aware sampling",
       stages=[{"name": "features", "until": 0.7},
               {"name": "classifier", "sampler": "class_aware", "train": "classifier", "reinit": True}],
       reference=KANG_2020)
preset("tau_norm", "BCE, then classifier rows W_j/||W_j||^tau with tau chosen on validation (macro F1 at 0.5)",
       posthoc={"name": "tau_norm"}, reference=KANG_2020)
preset("mixup", "MixUp of images and label vectors with a random partner, lam ~ Beta(0.2, 0.2)",
       mixup={"alpha": 0.2, "beta": 0.2, "partner": "none"},
       reference="Zhang et al. 2018, mixup: Beyond empirical risk minimization (ICLR)")
preset("balanced_mixup", "Balanced-MixUp: instance batch mixed with a class-aware batch, lam ~ Beta(0.2, 1)",
       mixup={"alpha": 0.2, "beta": 1.0, "partner": "class_aware"},
       reference="Galdran et al. 2021, Balanced-MixUp for highly imbalanced medical image classification (MICCAI)")
preset("aucm", "AUC-M margin loss (margin 1) optimised with PESG (lr 0.1, LibAUC's defaults)",
       loss="aucm", reference=YUAN_2021)
preset("aucm_2stage", "LibAUC's recipe: BCE pre-training for half the budget, then AUC-M + PESG, classifier "
       "re-initialised", stages=[{"name": "bce", "until": 0.5},
                                 {"name": "aucm", "loss": "aucm", "reinit": True}], reference=YUAN_2021)
