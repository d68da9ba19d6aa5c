"""Readers and writers: PLY (``ply``), OFF (``off``), generic meshes and point clouds (``mesh``:
PLY, OFF, OBJ, GLB/GLTF, STL, NPZ), ScanNet scans (``scannet``), ModelNet objects (``modelnet``).
Every writer is atomic (``atomic``); every reader rejects bad input with an error naming the file."""
