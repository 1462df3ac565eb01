/* ft_orders--1.4--1.5.sql: version 1.5 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.5'" to load this file. \quit

-- Each section below is one feature of 1.5, headed by its name.
