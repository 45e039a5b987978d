"""The OCPP 1.6 feature profiles of the simulated charger, one module each.

Each module holds the charger's side of its profile (a mixin on ``base.ChargerBase``, where the
profile has state or behaviour of its own) and the link's answers to the profile's CALLs (a
``...Handlers`` mixin of ``chargepoint_sim.link.OcppLink``):

* ``core`` — boot, heartbeat, statuses, sessions, configuration, availability, reset, remote start/stop;
* ``firmware`` — Firmware Management: UpdateFirmware, GetDiagnostics;
* ``local_auth_list`` — Local Auth List Management: GetLocalListVersion, SendLocalList;
* ``reservation`` — Reservation: ReserveNow, CancelReservation;
* ``smart_charging`` — Smart Charging: Set/ClearChargingProfile, GetCompositeSchedule;
* ``remote_trigger`` — Remote Trigger: TriggerMessage;
* ``security`` — the security whitepaper's profiles: Basic auth and TLS on the handshake.

``chargepoint_sim.charger.SimulatedCharger`` composes them.
"""
