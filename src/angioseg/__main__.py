from angioseg.cli import entry

entry()
