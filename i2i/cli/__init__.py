"""i2i's command line (`i2i ...`): click commands that build configs and call the library."""
