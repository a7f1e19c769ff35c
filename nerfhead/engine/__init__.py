"""nerfhead.engine"""
