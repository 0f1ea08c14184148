"""Forge adapters: publish immune's patch branches as pull requests and merge or close them."""
