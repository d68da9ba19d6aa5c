"""The data the pipeline runs on without any download (paper, Sec. 3.3 and 4).

- ``classes``: the ScanNet-like class set of labelled scenes, and the paper's eight object categories.
- ``furniture``: the shipped CC-0 furniture (Sweet Home 3D / Blend Swap) as dense surface samples,
  per-category normalisation of foreign meshes, and 1000-point object sampling.
- ``rooms``: procedural labelled rooms with scan-like imperfections (``make_room``,
  ``default_rooms``, ``default_scene``).
- ``scannet``, ``modelnet``: readers of the real datasets (ScanNet scans, ModelNet objects) on top of
  the format readers of :mod:`fourdcontrast.io`.
"""
