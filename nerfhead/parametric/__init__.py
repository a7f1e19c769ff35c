"""nerfhead.parametric"""
