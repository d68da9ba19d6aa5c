"""Backbones and heads of 4DContrast (Sec. 3.3.1)."""
