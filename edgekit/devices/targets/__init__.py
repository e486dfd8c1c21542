"""Device targets: how files move and commands run on a device (local, SSH, adb)."""
