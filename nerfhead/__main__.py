from nerfhead.cli.main import entrypoint

entrypoint()
