#!/usr/bin/env python3
"""Same network, weights and input as ../resnet_mini, but the Flatten before
the Gemm is Shape -> Gather -> Concat -> Reshape (exercises shape folding).
Usage: python make.py [OUT_DIR]
"""
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else here
sys.argv = [sys.argv[0], "--variant", "shape", out]
runpy.run_path(os.path.join(here, "..", "resnet_mini", "make.py"), run_name="__main__")
