"""nerfhead.track"""
