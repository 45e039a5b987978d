from chargepoint_sim.cli import main

main()
