"""fourdcontrast — 4DContrast (Chen, Nießner, Dai; ECCV 2022) as a toolkit.

The public API is re-exported here so notebooks read ``fc.sample_trajectory(...)``.
"""

# isort: split
# --- the records that flow through the pipeline ---
from fourdcontrast.records import (
    SOURCE_OBJECT,
    SOURCE_SCENE,
    Frame,
    HeightMap,
    Scene,
    Sequence,
    ShapeObject,
    Trajectory,
)

# isort: split
# --- sources: readers, shipped CC-0 furniture, procedural labelled rooms (Sec. 4 data) ---
from fourdcontrast.io.mesh import (
    Mesh,
    read_mesh,
    read_scene,
    write_mesh,
    write_scene,
)
from fourdcontrast.io.off import (
    read_off,
    write_off,
)
from fourdcontrast.io.ply import (
    PlyData,
    read_ply,
    write_ply,
)
from fourdcontrast.sources.classes import (
    CLASS_NAMES,
    OBJECT_CATEGORIES,
)
from fourdcontrast.sources.furniture import (
    CATEGORY_SIZES,
    default_objects,
    furniture_catalog,
    load_furniture,
    normalize_mesh,
    read_object,
    sample_object,
)
from fourdcontrast.sources.modelnet import (
    list_modelnet,
    load_modelnet,
    read_modelnet,
)
from fourdcontrast.sources.rooms import (
    RoomConfig,
    default_rooms,
    default_scene,
    make_room,
)
from fourdcontrast.sources.scannet import (
    read_scannet_scene,
)

# isort: split
# --- 4D sequence generation (Sec. 3.3) and correspondences (Sec. 3.2) ---
from fourdcontrast.data import (
    make_sequence,
)
from fourdcontrast.data.augment import (
    AugmentationError,
    AugmentOptions,
    Validity,
    augment_composed,
    augment_sequence,
    augment_views,
    chunk_mask,
    crop_sequence,
    remove_chunks,
    resample,
    sample_chunks,
    validity,
)
from fourdcontrast.data.compose import (
    compose_frame,
    compose_sequence,
)
from fourdcontrast.data.correspondence import (
    Correspondences,
    SceneCache,
    compute_correspondences,
    frame_correspondences,
    prepare_scene_cache,
)
from fourdcontrast.data.dataset import (
    Batch,
    GeneratedSequenceDataset,
    Sample,
    ShardDataset,
    collate_sequences,
)
from fourdcontrast.data.generate import (
    GenerationConfig,
    run_generation,
)
from fourdcontrast.data.memory import (
    retain_freed_memory,
)
from fourdcontrast.data.shards import (
    Shard,
    save_shard,
)
from fourdcontrast.data.synthetic import (
    synthetic_box_object,
    synthetic_room,
)
from fourdcontrast.data.trajectory import (
    candidate_positions,
    compute_height_map,
    nearest_candidate_lookup,
    sample_trajectory,
)

# isort: split
# --- sparse engine and backbones (Sec. 3.3.1) ---
from fourdcontrast.models.resunet import (
    BasicBlock,
    MinkUNet14,
    MinkUNet18,
    MinkUNet34,
    MinkUNet34C,
    count_parameters,
)
from fourdcontrast.sparse import (
    CoordinateManager,
    SparseTensor,
    get_backend,
    sparse_collate,
)
from fourdcontrast.sparse.quantize import (
    Quantization,
    quantize,
)

# isort: split
# --- the method: meta-architecture, losses (Eqs. 1-9), diagnostics, static pairs (Sec. 3.2, 3.3.1) ---
from fourdcontrast.data.static import (
    StaticPairDataset,
    static_pair,
)
from fourdcontrast.losses import (
    loss_3d,
    loss_3d4d,
    loss_4d,
    negative_cosine_similarity,
    simsiam_loss,
    total_loss,
)
from fourdcontrast.metrics import (
    batch_feature_match_recall,
    feature_match_recall,
)
from fourdcontrast.models.fourdcontrast import (
    METHODS,
    FourDContrast,
    MethodConfig,
    method_config,
)
from fourdcontrast.models.resunet import (
    build_backbone,
)

__version__ = "0.1.0"

__all__ = [
    "FourDContrast",
    "METHODS",
    "MethodConfig",
    "StaticPairDataset",
    "batch_feature_match_recall",
    "build_backbone",
    "feature_match_recall",
    "loss_3d",
    "loss_3d4d",
    "loss_4d",
    "method_config",
    "negative_cosine_similarity",
    "simsiam_loss",
    "static_pair",
    "total_loss",
    "AugmentOptions",
    "AugmentationError",
    "BasicBlock",
    "Batch",
    "CATEGORY_SIZES",
    "CLASS_NAMES",
    "CoordinateManager",
    "Correspondences",
    "Frame",
    "GeneratedSequenceDataset",
    "GenerationConfig",
    "HeightMap",
    "Mesh",
    "MinkUNet14",
    "MinkUNet18",
    "MinkUNet34",
    "MinkUNet34C",
    "OBJECT_CATEGORIES",
    "PlyData",
    "Quantization",
    "RoomConfig",
    "SOURCE_OBJECT",
    "SOURCE_SCENE",
    "Sample",
    "Scene",
    "SceneCache",
    "Sequence",
    "ShapeObject",
    "Shard",
    "ShardDataset",
    "SparseTensor",
    "Trajectory",
    "Validity",
    "augment_composed",
    "augment_sequence",
    "augment_views",
    "candidate_positions",
    "chunk_mask",
    "collate_sequences",
    "crop_sequence",
    "compose_frame",
    "compose_sequence",
    "compute_correspondences",
    "compute_height_map",
    "count_parameters",
    "default_objects",
    "default_rooms",
    "default_scene",
    "frame_correspondences",
    "furniture_catalog",
    "get_backend",
    "list_modelnet",
    "load_furniture",
    "load_modelnet",
    "make_room",
    "make_sequence",
    "nearest_candidate_lookup",
    "normalize_mesh",
    "prepare_scene_cache",
    "quantize",
    "read_mesh",
    "read_modelnet",
    "read_object",
    "read_off",
    "read_ply",
    "read_scannet_scene",
    "read_scene",
    "remove_chunks",
    "resample",
    "retain_freed_memory",
    "run_generation",
    "sample_chunks",
    "sample_object",
    "sample_trajectory",
    "save_shard",
    "sparse_collate",
    "synthetic_box_object",
    "synthetic_room",
    "validity",
    "write_mesh",
    "write_off",
    "write_ply",
    "write_scene",
]
