"""nerfhead.splats"""
