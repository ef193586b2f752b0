from erasus.cli import main

main()
