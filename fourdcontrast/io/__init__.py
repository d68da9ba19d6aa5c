"""Format readers and writers: PLY (``ply``), OFF (``off``), generic meshes and point clouds (``mesh``:
PLY, OFF, OBJ, GLB/GLTF, STL, NPZ). The dataset readers built on them (ScanNet scans, ModelNet objects)
live in :mod:`fourdcontrast.sources`. Every writer is atomic (``atomic``); every reader rejects bad input
with an error naming the file."""
