'use strict';

exports.handler = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`hello from node: ${name}`);
  return {
    hello: name,
    runtime: 'node',
    pid: process.pid,
    function: context.functionName,
    invocation: context.invocationId,
    remaining_ms: context.getRemainingTimeInMillis(),
  };
};
