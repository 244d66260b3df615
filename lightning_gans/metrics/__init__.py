"""GAN metrics: FID, KID, precision/recall, PPL, LPIPS; feature networks from weight files.

Papers: FID (Heusel et al. 2017), KID (Binkowski et al. 2018), improved precision/recall
(Kynkaanniemi et al. 2019), PPL (Karras et al. 2019), LPIPS (Zhang et al. 2018); conventions of
StyleGAN2-ADA's metrics. Nothing here downloads weights: see weights.py.
"""

from ..pretrained.lpips import LPIPS, load_lpips
from ..pretrained.weights import INCEPTION_ENV, LPIPS_ENV, VGG16_ENV, MissingWeightsError
from .dataset_stats import compute_feature_stats, iter_batches, list_source
from .fid import fid_from_stats, frechet_distance
from .inception import InceptionFeatures, load_inception, quantize_images, resize_tf_bilinear
from .kid import kernel_inception_distance, mmd2_unbiased
from .ppl import crop_face, path_length_samples, perceptual_path_length, slerp
from .precision_recall import precision_recall
from .stats import FeatureStats

__all__ = [
    "FeatureStats",
    "frechet_distance",
    "fid_from_stats",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "precision_recall",
    "InceptionFeatures",
    "load_inception",
    "quantize_images",
    "resize_tf_bilinear",
    "LPIPS",
    "load_lpips",
    "perceptual_path_length",
    "path_length_samples",
    "slerp",
    "crop_face",
    "compute_feature_stats",
    "iter_batches",
    "list_source",
    "MissingWeightsError",
    "INCEPTION_ENV",
    "VGG16_ENV",
    "LPIPS_ENV",
]
