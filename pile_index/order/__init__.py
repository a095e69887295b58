"""The GPT-NeoX v1.0 training order and provenance over it.

- :mod:`.index_maps`: order options and presets (``OrderConfig``), the MT19937 shuffle, ``doc_idx`` /
  ``sample_idx`` / ``shuffle_idx`` built bit for bit, their checks and check markers;
- :mod:`.options`: ``OrderOptions``, the options a user gives (preset and/or fields), from which the CLI's
  order flags and the service's order settings are generated;
- :mod:`.training`: (step, slot) -> tokens and source documents, document -> steps, the inverse files, raw
  and preshuffled orders (``open_order``);
- :mod:`.export`: rows in training order written out as a preshuffled ``.bin/.idx`` or as Parquet files.
"""

from .index_maps import (MAX_EPOCHS, PRESETS, IndexMaps, OrderConfig, build_doc_idx, build_index_mappings,
                         build_plan, build_sample_idx, build_shuffle_idx, checked_marker_key, checked_marker_path,
                         index_map_paths, legacy_shuffle, load_index_mappings, num_epochs, order_config,
                         write_index_mappings)
from .export import export_parquet, export_preshuffled, export_range, input_ids_array, token_list_type
from .options import OrderOptions
from .training import (Order, PreshuffledOrder, TrainingOrder, describe_batch, describe_sample, inverse_paths,
                       open_order, verify_orders)

__all__ = [
    "MAX_EPOCHS", "PRESETS", "IndexMaps", "Order", "OrderConfig", "OrderOptions", "PreshuffledOrder", "TrainingOrder",
    "build_doc_idx", "export_parquet", "export_preshuffled", "export_range", "input_ids_array", "token_list_type",
    "build_index_mappings", "build_plan", "build_sample_idx", "build_shuffle_idx",
    "checked_marker_key", "checked_marker_path", "describe_batch", "describe_sample", "index_map_paths",
    "inverse_paths", "legacy_shuffle", "load_index_mappings", "num_epochs", "open_order", "order_config",
    "verify_orders", "write_index_mappings",
]
