#!/usr/bin/env python3
"""An independent OPC UA server for Edgeplane's connector tests, on Python's asyncua.

Serves opc.tcp://127.0.0.1:PORT/ with security None and, with --user, username/password
identities only. Namespace urn:edgeplane:test:asyncua holds two variables with string ids,
Temperature (Double, a sine) and Counter (UInt32), both changing every 100 ms. Prints
"READY <port>" once it accepts connections; runs until killed.
"""

import argparse
import asyncio
import math

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

NAMESPACE = "urn:edgeplane:test:asyncua"


class Users(UserManager):
    def __init__(self, users):
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", action="append", default=[], help="NAME:PASSWORD")
    args = parser.parse_args()
    users = dict(u.split(":", 1) for u in args.user)

    server = Server(user_manager=Users(users)) if users else Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/")
    server.set_server_name("Edgeplane asyncua test server")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    idx = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", idx), "Plant")
    temperature = await plant.add_variable(
        ua.NodeId("Temperature", idx), "Temperature", 0.0, varianttype=ua.VariantType.Double
    )
    counter = await plant.add_variable(
        ua.NodeId("Counter", idx), "Counter", 0, varianttype=ua.VariantType.UInt32
    )
    async with server:
        print(f"READY {args.port}", flush=True)
        tick = 0
        while True:
            await asyncio.sleep(0.1)
            tick += 1
            await temperature.write_value(20.0 + 5.0 * math.sin(tick / 10.0))
            await counter.write_value(ua.Variant(tick, ua.VariantType.UInt32))


if __name__ == "__main__":
    asyncio.run(main())
