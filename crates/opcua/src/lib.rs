//! OPC UA: the connector that brings OPC UA servers onto MQTT, and a simulator server.
