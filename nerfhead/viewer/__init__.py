"""nerfhead.viewer"""
