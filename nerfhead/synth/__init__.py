"""nerfhead.synth"""
